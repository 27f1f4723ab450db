#!/usr/bin/env python
"""Tutorial 3, publisher: broadcast one log line through the 'logs' fanout."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

EXCHANGE = "logs"


def main(argv):
    line = " ".join(argv) or "info: Hello World!"
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange=EXCHANGE, exchange_type="fanout")
        # A fanout exchange ignores the routing key.
        ch.basic_publish(exchange=EXCHANGE, routing_key="", body=line)
        print(" [x] Sent %r" % line)
    finally:
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
