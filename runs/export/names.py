"""The export's names that the command line needs before anything heavy is imported: the
formats (the writers of :mod:`.formats` register exactly these) and ``--train``'s default."""

FORMATS = ("bundle", "python", "pt2", "onnx")
DEFAULT_TRAIN_EPOCHS = 10.0       # ``--train`` without a number
