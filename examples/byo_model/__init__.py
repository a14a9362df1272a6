"""A model of your own in one file (transitions.py) and the experiment that compares it with the
suite's baselines (byo_example.yaml); see transitions.py for the commands."""
