"""The clean-and-retrain loop shared by ``clean_digits`` and ``clean_cifar``: what does a
risk score add beyond de-duplication? The order of the stages is in :mod:`.loop`; the
stages in :mod:`.stages` (dataset, models, score, cleaning, samples) and :mod:`.measure`
(memorization, analysis); the report in :mod:`.report` and :mod:`.markdown`; the arms and
settings in :mod:`.settings` and :mod:`.arms`."""
