"""Model code logged with every genlib pyfunc model (MLflow models-from-code; see ``pyfunc.py``)."""

from mlflow.models import set_model

from genlib.tracking.pyfunc import GenlibPyfuncModel

set_model(GenlibPyfuncModel())
