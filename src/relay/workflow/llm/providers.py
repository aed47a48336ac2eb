"""Choosing and building LLM providers from :class:`LLMSettings`."""

from __future__ import annotations

import threading

from relay.workflow.config import LLMProviderConfig, LLMSettings
from relay.workflow.llm.base import LLMProvider
from relay.workflow.llm.offline import OfflineProvider
from relay.workflow.llm.openai_compatible import OpenAICompatibleProvider


def provider_from_config(config: LLMProviderConfig) -> LLMProvider:
    """Build the provider a config describes."""
    if config.kind == "openai":
        return OpenAICompatibleProvider(config)
    return OfflineProvider(config)


class LLMProviders:
    """:class:`LLMProviderSource` over :class:`LLMSettings`; providers are built once and reused."""

    def __init__(self, settings: LLMSettings | None = None) -> None:
        self.settings = settings or LLMSettings()
        self._lock = threading.Lock()
        self._built: dict[int, LLMProvider] = {}

    def config_for(self, node_id: str, model_provider: str) -> LLMProviderConfig:
        """The config that applies: by node id, then by the DSL's provider, then the default."""
        if node_id in self.settings.nodes:
            return self.settings.nodes[node_id]
        short = model_provider.rsplit("/", 1)[-1]
        for key in (model_provider, short):
            if key in self.settings.providers:
                return self.settings.providers[key]
        return self.settings.default

    def provider_for(
        self, node_id: str, model_provider: str, model_name: str
    ) -> tuple[LLMProvider, str]:
        """The provider for a node and the model name to send to it."""
        config = self.config_for(node_id, model_provider)
        with self._lock:
            provider = self._built.get(id(config))
            if provider is None:
                provider = provider_from_config(config)
                self._built[id(config)] = provider
        return provider, config.model or model_name

    def supports_vision(self, node_id: str, model_provider: str) -> bool:
        """Whether the provider chosen for the node accepts images (its ``vision`` setting)."""
        return self.config_for(node_id, model_provider).vision

    def close(self) -> None:
        """Close HTTP connection pools of built providers."""
        with self._lock:
            for provider in self._built.values():
                if isinstance(provider, OpenAICompatibleProvider):
                    provider.close()
            self._built.clear()
