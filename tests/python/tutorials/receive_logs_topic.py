#!/usr/bin/env python
"""Tutorial 5, subscriber: bind with patterns ('*' = one word, '#' = any)."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

EXCHANGE = "topic_logs"


def show(channel, method, properties, body):
    print(" [x] %r:%r" % (method.routing_key, body))


def main(argv):
    patterns = argv[1:]
    if not patterns:
        sys.stderr.write("Usage: %s [binding_key]...\n" % argv[0])
        return 1
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    ch = conn.channel()
    ch.exchange_declare(exchange=EXCHANGE, exchange_type="topic")
    mine = ch.queue_declare(queue="", exclusive=True).method.queue
    for pattern in patterns:
        ch.queue_bind(exchange=EXCHANGE, queue=mine, routing_key=pattern)
    ch.basic_consume(queue=mine, on_message_callback=show, auto_ack=True)
    print(" [*] Waiting for logs. To exit press CTRL+C")
    ch.start_consuming()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(0)
