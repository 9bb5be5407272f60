"""Reading files: schemas that check what a file holds (:mod:`nnxp.io.schema`)."""
