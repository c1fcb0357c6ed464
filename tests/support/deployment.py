"""The deployment and MongoDB stand-ins the demo uses, shared with the tests."""

from bot.demo_services import Deployment, TcpListener

__all__ = ["Deployment", "TcpListener"]
