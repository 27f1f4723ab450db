#!/usr/bin/env python
"""Tutorial 4, publisher: a log line keyed by its severity ('direct_logs')."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

EXCHANGE = "direct_logs"


def main(argv):
    severity = argv[0] if argv else "info"
    text = " ".join(argv[1:]) or "Hello World!"
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange=EXCHANGE, exchange_type="direct")
        ch.basic_publish(exchange=EXCHANGE, routing_key=severity, body=text)
        print(" [x] Sent %r:%r" % (severity, text))
    finally:
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
