"""The run folder: every file named once, the folder and its jobs, typed records, test tracks."""
