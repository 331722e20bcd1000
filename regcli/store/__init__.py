"""What lies on disk and how it is named: every file and folder name, the epoch and run records,
checkpoints, measured numbers cached by content, settings files, the listing of runs and
the seed groups read back.
"""
