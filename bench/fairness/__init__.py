"""The fairness benchmark's worker app and its committed results (``results.md``, chart)."""
