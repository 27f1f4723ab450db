#!/usr/bin/env python
"""Tutorial 3, subscriber: a private queue on the 'logs' fanout gets every line."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

EXCHANGE = "logs"


def show(channel, method, properties, body):
    print(" [x] %r" % body)


def main():
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    ch = conn.channel()
    ch.exchange_declare(exchange=EXCHANGE, exchange_type="fanout")
    # Empty name: the broker picks one.  Exclusive: gone with this connection.
    mine = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(exchange=EXCHANGE, queue=mine)
    ch.basic_consume(queue=mine, on_message_callback=show, auto_ack=True)
    print(" [*] Waiting for logs. To exit press CTRL+C")
    ch.start_consuming()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
