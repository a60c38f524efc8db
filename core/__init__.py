"""The ground floor, standard library only: the one-line errors (`errors`) and a run's folder and
lifetime (`runfolder`: names that never collide, the lock, atomic writes, signals)."""
