"""A faithful eSMS simulator (aiohttp.web) for tests, demos and benchmarks: GetCallback,
QueryZnsStatus, GetZaloMessageStatus and the pushes to a CallbackUrl."""

from esms_callbacks.simulator.accounts import SimAccount
from esms_callbacks.simulator.app import DELIVERY_PATH, GET_CALLBACK_PATH, QUERY_PATH, make_app
from esms_callbacks.simulator.pusher import PushSettings
from esms_callbacks.simulator.server import RunningSimulator, serve_in_thread
from esms_callbacks.simulator.state import LoggedRequest, Simulator

__all__ = [
    "DELIVERY_PATH",
    "GET_CALLBACK_PATH",
    "QUERY_PATH",
    "LoggedRequest",
    "PushSettings",
    "RunningSimulator",
    "SimAccount",
    "Simulator",
    "make_app",
    "serve_in_thread",
]
