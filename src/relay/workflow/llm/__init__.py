"""LLM providers: the interface (``base``), relay's ``offline`` provider, an OpenAI-compatible HTTP
provider, and :class:`~relay.workflow.llm.providers.LLMProviders` choosing among them per node.

Import the submodules; this package module stays empty so that the engine, which needs only the
interface, does not import httpx.
"""
