from logger.logger import setup_logging
{%- if cookiecutter.tensorboard %}
from logger.visualization import TensorboardWriter

__all__ = ["TensorboardWriter", "setup_logging"]
{%- else %}

__all__ = ["setup_logging"]
{%- endif %}
