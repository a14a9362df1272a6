"""The classic sequential baselines through RecBole 1.2.1: its models and trainer on the suite's
data and split (`model.py`), our data as RecBole atomic files and the id mapping (`data.py`), its
trainer driven by the suite's validation and stopping rule (`trainer.py`), the settings the
suite gives RecBole (`settings.py`), the fixes RecBole needs
on today's libraries (`compat.py`), and cross-checks of its split and evaluator (`checks.py`)."""
from .model import RecBoleModel
from .settings import ATOMIC_NAME, SUPPORTED_MODELS, RecBoleParams

__all__ = ["ATOMIC_NAME", "SUPPORTED_MODELS", "RecBoleModel", "RecBoleParams"]
