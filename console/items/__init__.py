"""Work items: the shift's workflow items (steps with a time limit), added, assigned and completed."""

from console.items.widget import WorkItemsWidget

__all__ = ["WorkItemsWidget"]
