"""The base every layer stands on: the settings (TrainConfig, RunOptions, every choice and
constraint), errors, safe text, bounded reads and atomic writes, locks, provenance, tables and
the job-event reporter. It imports nothing else of regcli's.
"""
