"""Where the tutorial programs connect.

A tutorial user would write host='localhost' and rely on the default port;
the test-suite starts brokers on arbitrary ports, so every program here takes
the address from the environment instead (AMQP_HOST, default localhost;
AMQP_PORT, default 5672).
"""
import os

AMQP_HOST = os.environ.get("AMQP_HOST", "localhost")
AMQP_PORT = int(os.environ.get("AMQP_PORT", "5672"))
