export const onRequestGet = async (context: {
  params: { name: string };
  data: Record<string, unknown>;
  functionPath: string;
}): Promise<Response> =>
  Response.json({ name: context.params.name, middleware: context.data.middleware, functionPath: context.functionPath });

export const onRequestPost = async (): Promise<Response> => new Response("posted", { status: 201 });
