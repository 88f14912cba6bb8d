"""flowsync: keep a SQL database in step with an OTP vendor's task-flow configuration."""

__version__ = "0.1.0"
