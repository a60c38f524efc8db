"""Scores of a predicted mask against its label (`metrics`): IoU, Dice, precision and recall, the
centre's error and the OpenEDS challenge score, shared by training, evaluation and export checks."""
