# The only addition to the published RabbitMQ tutorials: where to connect.
# Each tutorial's connection line reads these instead of hard-coding
# host='localhost' (and the implicit port 5672), so the test-suite can point
# them at a broker listening on any port.
import os

AMQP_HOST = os.environ.get("AMQP_HOST", "localhost")
AMQP_PORT = int(os.environ.get("AMQP_PORT", "5672"))
