"""Integrations with RL frameworks: each a plain module that imports its framework."""
