"""Looking at a run: the report, the dashboards and VisualDL logs."""
