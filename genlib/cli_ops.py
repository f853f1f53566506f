"""Operations commands (pipeline, registry, promote, ui, report): filled in by the pipeline work."""
