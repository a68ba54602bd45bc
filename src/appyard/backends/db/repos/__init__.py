"""The repositories of core.ports.UnitOfWork, by area: tenancy (tenants, tokens, people,
sequences), builds (apps, builds, uploads, findings, controls), jobs (jobs, the outbox),
store (versions, runs, history, issues), signing (signing keys)."""
