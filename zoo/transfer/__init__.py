"""Transfer learning shared by every image model: heads, freezing, fine-tuning."""

from zoo.transfer.head import replace_head  # noqa: F401
