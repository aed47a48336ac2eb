"""Domain tasks, one module per domain (indexing, cleanup, mail, ops traces, workflow runs,
retention, the reaper), each declared with ``relay_task`` from its catalogue row."""
