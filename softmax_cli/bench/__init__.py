"""`softmax bench`: the book's DataLoader pipeline against the memory loader, measured per epoch with memory."""
