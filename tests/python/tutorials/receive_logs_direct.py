#!/usr/bin/env python
"""Tutorial 4, subscriber: only the severities named on the command line."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

EXCHANGE = "direct_logs"


def show(channel, method, properties, body):
    print(" [x] %r:%r" % (method.routing_key, body))


def main(argv):
    wanted = argv[1:]
    if not wanted:
        sys.stderr.write("Usage: %s [info] [warning] [error]\n" % argv[0])
        return 1
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    ch = conn.channel()
    ch.exchange_declare(exchange=EXCHANGE, exchange_type="direct")
    mine = ch.queue_declare(queue="", exclusive=True).method.queue
    # One binding per severity; the queue gets the union.
    for severity in wanted:
        ch.queue_bind(exchange=EXCHANGE, queue=mine, routing_key=severity)
    ch.basic_consume(queue=mine, on_message_callback=show, auto_ack=True)
    print(" [*] Waiting for logs. To exit press CTRL+C")
    ch.start_consuming()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(0)
