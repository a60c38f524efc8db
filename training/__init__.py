"""Training: the loop (`loop`: a step, an epoch, a run's model, optimiser and progress), its loss
(`losses`: CombinedLoss), several processes (`distributed`), MLflow logging and curves
(`mlflow_log`) and the training figures `benchmark.py` reports (`speed`)."""
