#!/usr/bin/env python
"""Tutorial 6, server: answer Fibonacci requests arriving on 'rpc_queue'."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

QUEUE = "rpc_queue"


def fib(n):
    # Deliberately the slow, recursive definition: the server does real work.
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def answer(channel, method, props, body):
    n = int(body)
    print(" [.] fib(%s)" % n)
    result = fib(n)
    # Reply to the caller's own queue, tagged so it can match the request.
    channel.basic_publish(
        exchange="",
        routing_key=props.reply_to,
        properties=pika.BasicProperties(correlation_id=props.correlation_id),
        body=str(result),
    )
    channel.basic_ack(delivery_tag=method.delivery_tag)


def main():
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    ch = conn.channel()
    ch.queue_declare(queue=QUEUE)
    # With several servers running, spread the requests evenly.
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(queue=QUEUE, on_message_callback=answer)
    print(" [x] Awaiting RPC requests")
    ch.start_consuming()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
