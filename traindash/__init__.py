"""traindash: real-time monitoring for reinforcement-learning training runs."""

__version__ = "0.1.0"
