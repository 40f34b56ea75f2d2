"""The TensorFlow Serving gRPC client shared by the classifier and the trainer's deploy and evaluate."""
