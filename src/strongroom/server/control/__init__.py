"""The control plane: machines and agents, protected items, policies, jobs, alerts, metrics."""
