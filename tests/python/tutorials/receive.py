#!/usr/bin/env python
"""Tutorial 1, consumer: print whatever arrives on the 'hello' queue."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

QUEUE = "hello"


def on_message(channel, method, properties, body):
    print(" [x] Received %r" % body)


def main():
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    ch = conn.channel()
    ch.queue_declare(queue=QUEUE)
    ch.basic_consume(queue=QUEUE, on_message_callback=on_message, auto_ack=True)
    print(" [*] Waiting for messages. To exit press CTRL+C")
    try:
        ch.start_consuming()
    except KeyboardInterrupt:
        ch.stop_consuming()
        conn.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
