"""The async shell around the stage cores: one runner module per stage, and the worker
that supervises them (`pipeline.worker` re-exports them)."""
