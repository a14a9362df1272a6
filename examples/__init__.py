"""Examples of using the suite from outside it (byo_model: a model of your own)."""
