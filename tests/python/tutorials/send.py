#!/usr/bin/env python
"""Tutorial 1, producer: put one greeting on the 'hello' queue."""
import pika

from amqp_env import AMQP_HOST, AMQP_PORT

QUEUE = "hello"
GREETING = "Hello World!"


def main():
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    try:
        ch = conn.channel()
        # Declaring is idempotent; whichever side starts first creates it.
        ch.queue_declare(queue=QUEUE)
        ch.basic_publish(exchange="", routing_key=QUEUE, body=GREETING)
        print(" [x] Sent %r" % GREETING)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
