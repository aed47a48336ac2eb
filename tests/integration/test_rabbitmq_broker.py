"""RabbitMQ as broker works by environment alone (results stay in Redis)."""

from __future__ import annotations

from relay.app_factory import create_app
from relay.config import Settings
from relay.models import Base
from tests.conftest import migrated_external_db_in_use, run_worker
from tests.integration.test_api_support import Api, admin_settings
from tests.services import require_rabbitmq


def test_ping_over_rabbitmq(settings: Settings) -> None:
    amqp = require_rabbitmq()
    rabbit = settings.model_copy(
        update={"celery": settings.celery.model_copy(update={"broker_url": amqp})}
    )
    app = create_app(admin_settings(rabbit))
    runtime = app.extensions["relay"]
    if not migrated_external_db_in_use(admin_settings(rabbit)):
        Base.metadata.create_all(runtime.db.engine)
    assert runtime.celery.conf.broker_url.startswith("amqp://")
    api = Api(app)
    tenant = api.create_tenant("amqp")
    with run_worker(runtime, queues=["monitor"]):
        task_id = api.ok("POST", "/v1/ping-task", tenant, 202, json={"message": "via amqp"})[
            "task_id"
        ]
        result = api.ok("GET", f"/v1/tasks/{task_id}?wait=20", tenant)
    assert result["state"] == "SUCCESS"
    assert result["result"]["pong"] == "via amqp"
    runtime.close()
