"""lbcore: a load-balancer appliance engine."""

__version__ = "0.1.0"
