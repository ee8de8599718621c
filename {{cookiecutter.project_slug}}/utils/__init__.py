from utils.metric_tracker import MetricTracker
from utils.util import ConfigError, read_json, resolve_device, seed_everything, seed_worker, write_json

__all__ = [
    "ConfigError",
    "MetricTracker",
    "read_json",
    "resolve_device",
    "seed_everything",
    "seed_worker",
    "write_json",
]
