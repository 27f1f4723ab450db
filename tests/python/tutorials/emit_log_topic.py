#!/usr/bin/env python
"""Tutorial 5, publisher: a log line under a dotted key ('topic_logs')."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

EXCHANGE = "topic_logs"


def main(argv):
    key = argv[0] if argv else "anonymous.info"
    text = " ".join(argv[1:]) or "Hello World!"
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange=EXCHANGE, exchange_type="topic")
        ch.basic_publish(exchange=EXCHANGE, routing_key=key, body=text)
        print(" [x] Sent %r:%r" % (key, text))
    finally:
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
