"""``python -m pixelcnnpp.cli`` (also under ``torchrun ... -m pixelcnnpp.cli``)."""

from pixelcnnpp.cli import main

if __name__ == "__main__":
    main()
