"""The long-running agent: schedule, leadership, web endpoints."""
