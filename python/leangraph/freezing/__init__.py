"""The pieces of leangraph.freeze(): which form a model is, loading it, choosing its
inputs and outputs, and cleaning the frozen GraphDef."""
