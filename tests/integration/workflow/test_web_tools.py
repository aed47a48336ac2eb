"""relay's built-in web tools against a local stand-in of the sites they call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.workflow import GraphRunFailedEvent, GraphRunSucceededEvent, load_dsl
from relay.workflow.config import HttpRequestConfig, WebToolsConfig
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import (
    BUILTIN_PROVIDER_IDS,
    InMemoryTenantTools,
    TenantToolProvider,
    ToolCall,
    ToolError,
    invoke_tool,
)
from relay.workflow.tools.catalog import builtin_tools
from tests.unit.workflow.helpers import make_engine, offline_services

from .servers import LocalServer
from .tool_servers import dump, web_tools_server

FIXTURE = Path(__file__).parents[2] / "fixtures" / "dify_nodes" / "web-tools.yml"
OPEN = HttpRequestConfig(allow_private_addresses=True)


@pytest.fixture(scope="module")
def site() -> Iterator[LocalServer]:
    with web_tools_server() as server:
        yield server


def _config(site: LocalServer) -> WebToolsConfig:
    return WebToolsConfig(
        wikipedia_url=site.url,
        duckduckgo_url=site.url + "/html/",
        searxng_url=site.url,
        jina_reader_url=site.url + "/r",
        jina_search_url=site.url + "/s",
    )


def test_the_built_in_ids_are_the_installed_ones() -> None:
    installed = builtin_tools().installed()
    assert installed == sorted(BUILTIN_PROVIDER_IDS)


def test_an_export_using_every_web_tool_runs(site: LocalServer) -> None:
    app = load_dsl(FIXTURE.read_text())
    services = offline_services(tools=builtin_tools(_config(site), OPEN))
    url = site.url + "/page"
    events = list(make_engine(app.graph, {"url": url, "topic": "relay"}, services=services).run())
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent), dump(final)
    out = final.outputs
    assert out["page"] == (
        "TITLE: Relay notes\n\nRelay\nRelay runs Dify workflows.\nfair queues\nSSE"
    )
    assert out["wiki"] == (
        "Page: Relay (software)\nSummary: A workflow runner (Relay (software)|Relay).\n\n"
        "Page: Relay\nSummary: An electrically operated switch."
    )
    # max_results 2 from the tool configuration; the redirect wrapper is unwrapped.
    assert out["ddg"] == (
        "relay result 1\nhttps://example.org/1\nAbout relay number 1\n\n"
        "relay result 2\nhttps://example.org/2\nAbout relay number 2"
    )
    assert out["searx"] == "relay on SearXNG\nhttps://example.org/s\ncategory it"
    assert out["reader"] == f"# Markdown of {url}"
    scrape = next(r for r in site.requests if r["path"] == "/page")
    assert scrape["agent"] == "relay-test"


def test_web_tools_go_through_the_address_guard(site: LocalServer) -> None:
    tools = builtin_tools(_config(site), HttpRequestConfig())
    provider = tools.provider_for("builtin", "webscraper")
    assert provider is not None
    call = ToolCall("builtin", "webscraper", "webscraper", {"url": site.url + "/page"})
    with pytest.raises(ToolError, match=r"webscraper: refusing to call 127\.0\.0\.1"):
        provider.invoke(call, StopToken())
    reader = tools.provider_for("builtin", "jina")
    assert reader is not None
    with pytest.raises(ToolError, match=r"jina: refusing to call 127\.0\.0\.1"):
        reader.invoke(ToolCall("builtin", "jina", "jina_reader", {"url": "x"}), StopToken())


def test_jina_sends_the_tenants_api_key_and_searxng_its_instance(site: LocalServer) -> None:
    tenant = InMemoryTenantTools([
        ("t1", TenantToolProvider("builtin", "jina", credentials={"api_key": "jina-secret"})),
        ("t1", TenantToolProvider("builtin", "searxng",
                                  credentials={"searxng_base_url": site.url})),
    ])  # fmt: skip
    config = _config(site).model_copy(update={"searxng_url": None})
    tools = builtin_tools(config, OPEN).with_tenant(tenant, {})
    assert tools.credentials("t1", "builtin", "langgenius/jina/jina") == {"api_key": "jina-secret"}
    assert tools.credentials("t2", "builtin", "jina") == {}
    graph = load_dsl(FIXTURE.read_text()).graph
    services = offline_services(tools=tools)
    engine = make_engine(graph, {"url": site.url + "/page", "topic": "q"}, services=services)
    assert isinstance(list(engine.run())[-1], GraphRunSucceededEvent)
    reads = [r for r in site.requests if r["path"].startswith("/r/")]
    assert reads[-1]["auth"] == "Bearer jina-secret"
    # Another tenant has neither the key nor a SearXNG instance: searxng says what to set.
    call = ToolCall("builtin", "searxng", "searxng_search", {"query": "q"}, tenant_id="t2")
    with pytest.raises(ToolError, match="searxng_search needs a SearXNG instance"):
        invoke_tool(tools, call, StopToken())


def test_a_failing_site_fails_the_node_with_the_status(site: LocalServer) -> None:
    tools = builtin_tools(_config(site).model_copy(update={"jina_reader_url": site.url + "/nope"}),
                          OPEN)  # fmt: skip
    provider = tools.provider_for("builtin", "jina")
    assert provider is not None
    with pytest.raises(ToolError, match=r"jina: .*/nope/x answered HTTP 404: not found"):
        provider.invoke(ToolCall("builtin", "jina", "jina_reader", {"url": "x"}), StopToken())
    final = list(
        make_engine(load_dsl(FIXTURE.read_text()).graph, {"url": "ftp://x", "topic": "t"},
                    services=offline_services(tools=tools)).run()
    )[-1]  # fmt: skip
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error == "webscraper: URL must start with http:// or https://: 'ftp://x'"
