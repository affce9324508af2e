"""Messages: the message log (every page, notice and status update the engine wrote), retry and send again."""

from console.messages.widget import MessagesWidget

__all__ = ["MessagesWidget"]
