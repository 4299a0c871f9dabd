"""The learner seam: which learner trains a run's members (LEARNERS), and the ensemble's launch
above both; sweeps and fedavg reach the learners through it too."""
