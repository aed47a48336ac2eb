"""RabbitMQ as broker works by environment alone (results stay in Redis)."""

from __future__ import annotations

from relay.app_factory import create_app
from relay.config import Settings
from relay.models import Base
from tests.conftest import migrated_external_db_in_use, run_worker
from tests.services import require_rabbitmq


def test_ping_over_rabbitmq(settings: Settings) -> None:
    amqp = require_rabbitmq()
    rabbit = settings.model_copy(
        update={"celery": settings.celery.model_copy(update={"broker_url": amqp})}
    )
    app = create_app(rabbit)
    runtime = app.extensions["relay"]
    if not migrated_external_db_in_use(rabbit):
        Base.metadata.create_all(runtime.db.engine)
    assert runtime.celery.conf.broker_url.startswith("amqp://")
    client = app.test_client()
    with run_worker(runtime, queues=["monitor"]):
        task_id = client.post("/v1/ping-task", json={"message": "via amqp"}).json["task_id"]
        result = client.get(f"/v1/tasks/{task_id}?wait=20").json
    assert result["state"] == "SUCCESS"
    assert result["result"]["pong"] == "via amqp"
    runtime.close()
