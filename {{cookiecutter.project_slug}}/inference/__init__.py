"""After training: classifying image files (predict.py) and exporting a model for serving (export.py)."""
