"""The pull step's old dotted path: deployments made before the stack moved to :mod:`genlib.ops` name
``genlib.stack.set_project_directory`` (``prefect.yaml`` now names ``genlib.ops.project``'s)."""

from genlib.ops.project import set_project_directory

__all__ = ["set_project_directory"]
