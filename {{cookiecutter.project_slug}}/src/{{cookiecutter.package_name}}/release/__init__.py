"""The MLflow registry and releases: lineage, the gate, promote, rollback, the champion, bento."""
