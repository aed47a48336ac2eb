"""Tools the tool node calls: the provider interface (``base``), relay's built-in providers
(``builtin``) and workflow-as-tool (``workflow_apps``, which runs another published app)."""
